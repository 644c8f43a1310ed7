"""Risk rules over a session's facts and live events (safeguards for the exclusion review).

`facts` folds manifest entries (and live views) into `SessionFacts`; `rules` holds one small
sans-I/O evaluator per rule type; `ruleset` loads and validates the YAML rule file; `engine`
evaluates a rule set at an injected `now` and returns the alerts not yet written.
"""
