//! Graphviz DOT export of a graph.
