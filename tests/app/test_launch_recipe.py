"""The launch form lists what recipe=paper implies before launch and stores the resolved recipe."""

from __future__ import annotations

from mmviz.store import open_store


def test_method_tab_lists_the_paper_recipe_and_launch_stores_it(tmp_path, open_page):
    ws = tmp_path / "ws"
    at = open_page(ws, "runs")
    at.selectbox(key="launch.method").select("relearn").run()
    texts = [t.value for t in at.text]
    assert any(t.startswith("recipe=paper sets optim.name='sgd', optim.lr=0.002") for t in texts), texts
    at.selectbox(key="launch.dataset").select("synthetic").run()
    at.selectbox(key="launch.method.relearn.recipe").select("paper")
    at.number_input(key="launch.data.synthetic.n_train").set_value(100)
    at.number_input(key="launch.train.epochs").set_value(1)  # an explicit setting wins over the recipe's 90
    [b for b in [*at.button, *at.get("form_submit_button")] if b.label == "Launch run"][0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with open_store(ws) as store:
        (run,) = store.list_runs().to_dict("records")
    cfg = run["config"]
    assert cfg["method_params"]["recipe"] == "paper" and cfg["method_params"]["reinit_every"] == 20
    assert (cfg["optim"]["name"], cfg["optim"]["lr"], cfg["train"]["epochs"]) == ("sgd", 2e-3, 1)
