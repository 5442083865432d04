pub mod data;
pub mod images;
pub mod plot;
