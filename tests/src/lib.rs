//! Helpers shared by the end-to-end tests: locating the built `flowbot` binary and `../shared`.
