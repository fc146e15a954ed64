"""The shared ground under every stage: the one-line error (``errors``), atomic files and run folders
(``fileio``), the output guard and folder locks (``guard``), the memory budget (``budget``), typed options
(``config``), the machine key and probe cache (``machine``), process groups (``distributed``) and inference
output folders with their plan and manifest (``output_folder``).

Nothing is imported here: each stage imports the module it needs, so the command line stays light.
"""
