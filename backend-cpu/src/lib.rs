//! cubevec backend-cpu (under construction).
