"""Dataset recipes: `python -m kseg.recipes.<dataset> {train,evaluate,predict}`."""
