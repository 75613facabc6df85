"""The frontier's verdict and figure (incop.report.frontier): ties named, the closest recipe named
when none is within the tolerance, and a figure of many recipes with a legend."""


def _row(name, epochs, gap, seeds=3):
    return {"recipe": name, "seeds": seeds, "search_epochs_mean": epochs, "epochs_share": epochs / 20,
            "gap_mean": gap, "gap_std": 0.1, "within_tolerance": name != "reference" and gap >= -0.3,
            "inside_spread": False}


def test_the_verdict_names_ties():
    from incop.report.frontier import verdict

    summary = [_row("reference", 20, 0.0), _row("fixed-1", 5, -0.1), _row("ciap", 5, -0.1),
               _row("allr-2", 10, 0.05)]
    line = verdict(summary, 0.3)[0]
    assert "is fixed-1 and ciap: 25% of the reference's search epochs" in line and "each" in line
    summary[2] = _row("ciap", 5, -0.2)  # the same cost, another gap: both given
    line = verdict(summary, 0.3)[0]
    assert "cost the same, 25%" in line and "fixed-1 -0.10 ± 0.10" in line \
        and "ciap -0.20 ± 0.10" in line
    summary = [_row("reference", 20, 0.0), _row("a", 5, -0.5), _row("b", 6, -0.5)]
    assert "the closest was a and b at -0.50 points" in verdict(summary, 0.3)[0]


def test_a_figure_of_many_recipes_has_a_legend_not_labels_on_labels():
    """Up to 8 recipes are labelled beside their points; more (a study's grid, points close
    together) get a legend beside the axes, each recipe its own colour and marker."""
    from incop.report.frontier import LABELLED, frontier_figure

    def summary(n):
        return [{"recipe": "reference" if i == 0 else f"r{i}", "seeds": 3,
                 "search_epochs_mean": 5.0 + i % 3, "search_epochs_std": 0.1,
                 "ticket_test_acc_mean": 88.0 + (i % 2) * 0.01, "ticket_test_acc_std": 0.1}
                for i in range(n)]

    few = frontier_figure(summary(LABELLED), 0.3).axes[0]
    assert len(few.texts) >= 1 and few.get_legend() is not None
    assert {t.get_text() for t in few.get_legend().get_texts()} <= {
        "Pareto front", "reference's ticket minus 0.3 points"}
    many = frontier_figure(summary(25), 0.3).axes[0]
    assert not many.texts  # no annotations to overlap
    shown = [t.get_text() for t in many.get_legend().get_texts()]
    assert {"reference", *(f"r{i}" for i in range(1, 25))} <= set(shown)
    styles = {(tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color(), line.get_marker())
              for line in many.get_lines() if line.get_marker() not in (None, "None", "")}
    assert len(styles) >= 25  # every recipe drawn its own way
