//! glommio DMA files.
