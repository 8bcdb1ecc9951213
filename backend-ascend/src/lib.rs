//! cubevec backend-ascend (under construction).
