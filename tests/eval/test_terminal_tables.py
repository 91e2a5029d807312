"""The report's terminal tables fit 80 columns and show each bucket's edges and size."""

from rich.console import Console

from mimrec.pipeline import bucket_auc_table, bucket_table, summary_table


def _report():
    buckets = {"cold": ("0", 149), "tail": ("1-9", 398), "mid": ("10-99", 4425),
               "head": ("100+", 5028)}
    vs = {"delta_auc": 0.0032, "delta_auc_interval": [0.0015, 0.0050], "n": 10000, "users": 180,
          "resolved": True}
    def model(auc):
        return {"auc": auc, "gauc": auc - 0.01, "logloss": 0.6, "rela_impr": 1.0,
                "valid_auc": auc - 0.02,
                "buckets": {b: {"auc": auc, "auc_std": 0.0, "n": n}
                            for b, (_, n) in buckets.items()}}
    return {"protocol": "P1", "baseline": "din", "valid_best": "ciubm",
            "models": {"din": model(0.7309),
                       "ciubm": {**model(0.7341), "vs_baseline": vs,
                                 "vs_baseline_buckets": {b: vs for b in buckets}}},
            "buckets": {"edges": {b: {"train_count": r, "test_rows": n}
                                  for b, (r, n) in buckets.items()}, "notes": []}}


def test_tables_fit_80_columns_without_cutting_a_number():
    console = Console(width=80, record=True)
    for table in (summary_table(_report()), bucket_auc_table(_report()), bucket_table(_report())):
        console.print(table)
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80
    assert "+0.0032 [+0.0015, +0.0050]" in text and "…" not in text
    for edge in ("1-9", "10-99", "100+", "4,425", "5,028"):  # each bucket's edges and size
        assert edge in text


def test_a_control_is_marked_in_the_summary_and_left_out_of_the_bucket_differences():
    report = _report()
    control = {**report["models"]["ciubm"], "vs_baseline": {**report["models"]["ciubm"]
                                                            ["vs_baseline"], "delta_auc": 0.0}}
    report["models"]["ciubm_shuffled"] = control
    report["controls"] = ["ciubm_shuffled"]
    console = Console(width=80, record=True)
    console.print(summary_table(report))
    text = console.export_text()
    assert "ciubm_shuffled ~" in text and "~ shuffled-content control" in text
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text
    console.print(bucket_table(report))
    differences = console.export_text().split("per bucket")[-1]
    assert "ciubm " in differences and "ciubm_shuffled" not in differences
