from appliance.errors import ApplianceError, FeederEmpty, all_error_classes
from appliance.messages_vi import MESSAGES_VI, message_for


def test_every_error_code_has_a_vietnamese_sentence() -> None:
    missing = [cls.__name__ for cls in all_error_classes() if cls.code not in MESSAGES_VI]
    assert missing == []


def test_codes_are_unique_per_class() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))


def test_message_for_known_and_unknown_errors() -> None:
    assert "Khay nạp giấy" in message_for(FeederEmpty("ADF empty"))
    assert message_for(ValueError("x")) == MESSAGES_VI["unknown"]
    assert message_for(ApplianceError()) == MESSAGES_VI["unknown"]


def test_messages_are_one_sentence_or_two_and_end_with_a_full_stop() -> None:
    for code, text in MESSAGES_VI.items():
        assert text.strip() == text and text.endswith("."), code
        assert "\n" not in text, code


def test_every_page_flag_has_a_vietnamese_label() -> None:
    from appliance.model import PageFlag
    from appliance.web.routes.common import FLAG_LABELS

    assert {f.value for f in PageFlag} <= set(FLAG_LABELS)
