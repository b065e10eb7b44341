//! chorus-wire
