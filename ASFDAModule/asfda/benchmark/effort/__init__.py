"""The edit-effort benchmark (``asfda proposals-bench``): how close the served starting segmentation is to the
reference, at 0 to 3 labelled cases."""
