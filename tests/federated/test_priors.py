from federated.priors import PriorNotice, PriorRequest, RoundPriors, on_global, on_request

TEXT = '{"kind": "global", "round": 7}'


def test_requests_before_the_global_are_answered_when_it_arrives_in_request_order() -> None:
    state = RoundPriors()
    assert on_request(state, PriorRequest("b", 7)) == []
    assert on_request(state, PriorRequest("a", 7)) == []
    assert on_global(state, 7, TEXT) == [PriorNotice("b", 7, TEXT), PriorNotice("a", 7, TEXT)]
    assert state.waiting == []


def test_a_request_after_the_global_is_answered_at_once() -> None:
    state = RoundPriors()
    assert on_global(state, 7, TEXT) == []
    assert on_request(state, PriorRequest("a", 7)) == [PriorNotice("a", 7, TEXT)]
    assert state.waiting == []


def test_a_repeated_request_waits_once() -> None:
    state = RoundPriors()
    on_request(state, PriorRequest("a", 7))
    on_request(state, PriorRequest("a", 7))
    assert on_global(state, 7, TEXT) == [PriorNotice("a", 7, TEXT)]


def test_a_replayed_global_keeps_the_first_text_and_answers_nobody_twice() -> None:
    state = RoundPriors()
    on_request(state, PriorRequest("a", 7))
    on_global(state, 7, TEXT)
    assert on_global(state, 7, TEXT + " ") == []
    assert state.text == TEXT
    assert on_request(state, PriorRequest("b", 7)) == [PriorNotice("b", 7, TEXT)]
