//! Render: the terminal report, per-call exports, flame graphs and the HTML page.

pub mod export;
pub mod flame;
pub mod html_report;
pub mod report;
