//! Small constructors that keep the tilers' statement building readable.

use cubevec_ir::kernel::{BufId, Expr, GmTile, Pipe, Stmt, Tile};

/// A variable.
pub fn v(name: &str) -> Expr {
    Expr::var(name)
}

/// A constant.
pub fn c(value: u64) -> Expr {
    Expr::c(value)
}

/// `let var = value`.
pub fn let_(var: &str, value: Expr) -> Stmt {
    Stmt::Let {
        var: var.to_string(),
        value,
    }
}

/// `for var in 0..extent { body }`.
pub fn for_(var: &str, extent: Expr, pipelined: bool, body: Vec<Stmt>) -> Stmt {
    Stmt::For {
        var: var.to_string(),
        extent,
        pipelined,
        body,
    }
}

/// `SetFlag<from_to>(event)`.
pub fn set(from: Pipe, to: Pipe, event: Expr) -> Stmt {
    Stmt::SetFlag { from, to, event }
}

/// `WaitFlag<from_to>(event)`.
pub fn wait(from: Pipe, to: Pipe, event: Expr) -> Stmt {
    Stmt::WaitFlag { from, to, event }
}

/// A region of a buffer stage.
pub fn tile(buf: BufId, stage: Expr, at: (Expr, Expr), size: (Expr, Expr)) -> Tile {
    Tile {
        buf,
        stage,
        row: at.0,
        col: at.1,
        rows: size.0,
        cols: size.1,
    }
}

/// A region of a GM parameter.
pub fn gm(param: usize, batch: Expr, at: (Expr, Expr), size: (Expr, Expr)) -> GmTile {
    GmTile {
        param,
        batch,
        row: at.0,
        col: at.1,
        rows: size.0,
        cols: size.1,
    }
}

/// Iterations of the loop of block `blk` when `units` work units are dealt round-robin over
/// `blocks` blocks (block `b` takes units `b`, `b + blocks`, …).
pub fn block_trips(units: u64, blocks: u64) -> Expr {
    c(units).sub(v("blk")).add(c(blocks - 1)).div(c(blocks))
}

/// `roundup(e, 16)`.
pub fn round16(e: Expr) -> Expr {
    e.add(c(15)).div(c(16)).mul(c(16))
}
