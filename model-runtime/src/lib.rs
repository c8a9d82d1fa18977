//! Flowbot model runtime.
