"""Language: parsing and answering planners' spatial queries over a scene graph."""
