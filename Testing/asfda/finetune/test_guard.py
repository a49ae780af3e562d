from asfda.finetune.guard import guard_decision


def test_a_worse_round_is_not_activated_unless_asked():
    decision = guard_decision(0.90, 0.85, "held-out")
    assert not decision.accepted and "0.8500 < parent's 0.9000" in decision.reason
    assert "accept_worse" in decision.reason
    assert guard_decision(0.90, 0.85, "held-out", accept_worse=True).accepted
    assert guard_decision(0.85, 0.85, "fit").accepted and guard_decision(0.8, 0.9, "fit").accepted
    assert guard_decision(None, 0.9, "fit").accepted and guard_decision(float("nan"), 0.9, "fit").accepted
