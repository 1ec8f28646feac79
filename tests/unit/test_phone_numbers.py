import pytest

from service.domain.phone_numbers import InvalidNumber, parse_e164


def test_valid_e164_passes_unchanged():
    assert parse_e164("+46736265400") == "+46736265400"
    assert parse_e164("+14155552671") == "+14155552671"


@pytest.mark.parametrize(
    "value",
    [
        "+4673&PJSIP/x",
        "+46736265400@evil",
        "+4673/626",
        "46736265400",
        "+46 736 265 400",
        "+٤٦٧٣٦٢٦٥٤٠٠",  # Arabic-Indic digits
        "+４６７３６２６５４００",  # full-width digits
        "+46736265400\r\nAction: Originate",
        "+46736265400;",
        "+0736265400",
        "+",
        "",
        "+1234567890123456",  # 16 digits
        "+46123",  # right shape, not a valid number
        46736265400,
        None,
        ["+46736265400"],
    ],
)
def test_everything_else_is_refused(value):
    with pytest.raises(InvalidNumber):
        parse_e164(value)
