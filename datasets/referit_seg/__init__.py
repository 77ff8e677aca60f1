"""referit_seg: ReferIt expressions with masks, in text_objseg's layout (see README.md)."""
