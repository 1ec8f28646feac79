from service.domain import sms_text


def test_plain_ascii_is_gsm7_one_septet_each():
    assert sms_text.measure("Hello") == sms_text.Encoded("GSM-7", 5)


def test_extension_characters_take_two_septets():
    for ch in "€[]{}^~|\\\f":
        assert sms_text.measure(ch) == sms_text.Encoded("GSM-7", 2), ch


def test_gsm7_national_letters_are_one_septet():
    assert sms_text.measure("ÆØÅæøåÄÖÑÜäöñüàèéùìòÇÉß¡¿§£¥").units == 28


def test_anything_else_is_ucs2_counted_in_utf16_units():
    assert sms_text.measure("Привет") == sms_text.Encoded("UCS-2", 6)
    assert sms_text.measure("hi 😀") == sms_text.Encoded("UCS-2", 5)  # surrogate pair
    assert sms_text.measure("ç") == sms_text.Encoded("UCS-2", 1)  # lower-case ç is not GSM-7


def test_segments():
    assert sms_text.Encoded("GSM-7", 160).segments == 1
    assert sms_text.Encoded("GSM-7", 161).segments == 2
    assert sms_text.Encoded("GSM-7", 306).segments == 2
    assert sms_text.Encoded("UCS-2", 70).segments == 1
    assert sms_text.Encoded("UCS-2", 71).segments == 2
