//! cubevec frontend (under construction).
