"""Stage 1 — data: synthetic ground-truth screens, load_data tables, images, annotations."""

#: Cell Painting channels in JUMP order.
JUMP_CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")

#: Metadata columns every site table carries (load_data style).
SITE_KEYS: tuple[str, ...] = (
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
)
