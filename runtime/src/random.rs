//! A small seedable random number generator (being written).
