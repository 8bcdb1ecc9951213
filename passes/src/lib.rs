//! cubevec passes (under construction).
