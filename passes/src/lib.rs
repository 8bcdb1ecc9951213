//! cubevec passes: graph IR in, kernel IR out (optimisation, partitioning, tiling, cost model).
