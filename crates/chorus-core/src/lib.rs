//! chorus-core
