//! qube: shared code for the example CLI
