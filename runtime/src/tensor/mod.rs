//! Tensors: n-dimensional arrays with shared storage (being written).
