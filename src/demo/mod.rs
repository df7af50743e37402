//! placeholder while building
pub struct Report;
impl Report { pub fn passed(&self) -> bool { false } }
impl std::fmt::Display for Report { fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
pub async fn run() -> anyhow::Result<Report> { Ok(Report) }
