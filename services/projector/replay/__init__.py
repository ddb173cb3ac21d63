"""A replay: rebuild the read model beside the live one from offset 0, then swap it in."""
