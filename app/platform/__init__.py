"""The composition root: builds the guard's typed runtime once, in order, and runs its loops."""
