"""DreamApply: each fixture names the vendor document it follows."""
