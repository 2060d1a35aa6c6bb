//! qube-runtime
