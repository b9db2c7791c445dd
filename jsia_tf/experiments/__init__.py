"""The paper's experiments as runners of many training runs (Table 3, Fig. 5,
Table 2): resumable runs, statistics over seeds, HParams summaries."""
