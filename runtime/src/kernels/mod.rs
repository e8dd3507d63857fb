//! Compute kernels of the tensors (being written).
