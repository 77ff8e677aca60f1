"""ref_coco_seg: RefCOCO, RefCOCO+ and RefCOCOg with masks (see README.md)."""
