from tools import schema_doc


def test_the_schema_document_says_what_the_models_say():
    assert schema_doc.main(["--check"]) == 0, "make schema-doc writes it anew"


def test_every_field_of_the_comparison_is_described():
    blank = [
        f"{model.__name__}.{name}"
        for model in schema_doc.models_below(schema_doc.Comparison)
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert blank == []


def test_a_field_type_reads_as_words():
    assert schema_doc.type_name(list[int] | None) == "list of int or null"
    assert schema_doc.type_name(dict[str, str]) == "object"
