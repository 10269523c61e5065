"""int8 bundles that keep quality: calibration on the trust's notes, static quantisation with
layers kept in float by measured sensitivity, and the quality gate against fp32."""
