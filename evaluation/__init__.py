"""Pure metrics with intervals, operating points, the screening workload, evaluation and calibration
reports, the shadow report. Models run through ``inference``, so what is measured is what runs."""
