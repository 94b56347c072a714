"""``fpgagen explore`` (HAO): per-layer bit widths and foldings chosen together, the accuracy x FPS Pareto front.

* ``contract``: the user's factory / evaluate / finetune / calibration (``module:function``), and the trace that
  finds how many weight layers and activation quantizers the factory's network has;
* ``predictor``: per-layer sensitivity on calibration data, combined additively, fitted on the fine-tunes run;
* ``program``: one integer program (scipy milp / HiGHS) choosing per layer bit widths x folding core from the
  IR's own cycle and resource models, maximizing FPS under the board budget and a predicted-loss budget;
* ``run``: the driver: Ray tasks (fine-tune + evaluate, build + C-sim check), checkpointed in the output folder,
  ``pareto.json`` / ``pareto.md`` / ``pareto.png``;
* ``face``: the shipped face detector's factory, evaluate, finetune and calibration (``fpgagen explore face``).

Imported on first use by the CLI (it pulls in torch, brevitas and Ray)."""
