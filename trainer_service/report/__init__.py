"""The fit report: what the trainer measures while it trains, the checks it judges, and the report it writes.

One small module each: ``trace`` (which training functions ran, how often, how long), ``batch_checks``
(every batch received), ``overlap`` (val content seen in train), ``preflight`` (one batch overfits),
``accuracy`` (pairs), ``checks`` (verdicts), ``data_checks``/``recipe_checks`` (the judging), ``plot``
(the PNG) and ``build`` (the report itself). Nothing here imports the gateway, and the gateway renders
the HTML page from the report alone.
"""
