//! Parsing and checking, shared by the macros: `ast` (the IR, parsed from the struct), `geo`
//! (geometry expressions), `check` (shape rules) and `ctxt` (the error collector).

pub mod ast;
pub mod check;
pub mod ctxt;
pub mod geo;
pub mod model;
