"""The served OpenAPI schema describes the envelope, the problems and the document types
(the fuzz test checks the answers against it; this pins what it must say)."""

import pytest

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
ENVELOPED = ["/api/v1/price-books", "/api/v1/models", "/api/v1/power-readings", "/api/v1/webhook-endpoints",
             "/api/v1/webhook-endpoints/{endpoint_id}/deliveries", "/api/v1/customers/{customer_id}/credits",
             "/api/v1/invoices", "/api/v1/usage", "/api/v1/unit-economics", "/api/v1/margin-alerts",
             "/api/v1/invoices/{invoice_id}/credit-notes", "/api/v1/customers", "/api/v1/dead-letters",
             "/api/v1/credit-notes", "/api/v1/debit-notes", "/api/v1/usage-adjustments"]


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        return Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()


def resolved(schema, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_list_is_documented_as_the_envelope(schema):
    for path in ENVELOPED:
        body = resolved(schema, schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
                        ["schema"])

        assert {"next", "results"} <= set(body["properties"]), path
        assert body["properties"]["results"]["type"] == "array", path


def test_every_error_status_is_a_problem_and_the_common_ones_are_everywhere(schema):
    for path, method, operation in operations(schema):
        errors = {code: response for code, response in operation["responses"].items() if int(code) >= 400}

        assert {"401", "403", "406", "429"} <= set(errors), (method, path)
        assert all(list(r["content"]) == [PROBLEM] for r in errors.values()), (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415", "422"} <= set(errors), (method, path)
            assert list(operation["requestBody"]["content"]) == ["application/json"], (method, path)
        if "{" in path:
            assert "404" in errors, (method, path)
    assert set(schema["components"]["schemas"]["Problem"]["required"]) == {"type", "title", "status", "detail"}


def test_each_document_has_its_own_content_type(schema):
    types = {path: list(schema["paths"][path]["get"]["responses"]["200"]["content"])
             for path in ("/api/v1/invoices/{invoice_id}/pdf", "/api/v1/invoices/{invoice_id}/csv",
                          "/api/v1/exports/focus", "/api/v1/credit-notes/{credit_note_id}/pdf",
                          "/api/v1/debit-notes/{debit_note_id}/pdf")}

    assert types == {"/api/v1/invoices/{invoice_id}/pdf": ["application/pdf"],
                     "/api/v1/invoices/{invoice_id}/csv": ["text/csv"], "/api/v1/exports/focus": ["text/csv"],
                     "/api/v1/credit-notes/{credit_note_id}/pdf": ["application/pdf"],
                     "/api/v1/debit-notes/{debit_note_id}/pdf": ["application/pdf"]}


def test_conflicts_and_outages_are_documented_where_they_happen(schema):
    paths = schema["paths"]

    assert "409" in paths["/api/v1/invoices/{invoice_id}/finalize"]["post"]["responses"]
    assert {"200", "201", "409", "422"} <= set(paths["/api/v1/usage-adjustments"]["post"]["responses"])
    assert {"200", "201", "409"} <= set(paths["/api/v1/invoices/{invoice_id}/rerate"]["post"]["responses"])
    assert "409" in paths["/api/v1/customers/{customer_id}/contract"]["put"]["responses"]
    assert "409" in paths["/api/v1/clusters"]["post"]["responses"]
    assert "503" in paths["/api/v1/usage-events"]["post"]["responses"]
    assert "409" not in paths["/api/v1/customers"]["get"]["responses"]


def test_every_json_answer_of_the_api_is_typed(schema):
    def typed(node: dict) -> bool:
        node = resolved(schema, node)
        if node.get("type") == "array":
            return typed(node["items"])
        results = node.get("properties", {}).get("results")
        return bool(node.get("properties")) and (results is None or typed(results))

    untyped = [(method, path, code) for path, method, operation in operations(schema) if path.startswith("/api/v1/")
               for code, response in operation["responses"].items() if code.startswith("2")
               for content_type, body in response.get("content", {}).items()
               if content_type == "application/json" and not typed(body["schema"])]

    assert untyped == []


def test_usage_rows_carry_every_token_field(schema):
    page = resolved(schema, schema["paths"]["/api/v1/usage"]["get"]["responses"]["200"]["content"]
                    ["application/json"]["schema"])
    row = resolved(schema, page["properties"]["results"]["items"])

    fields = ("events", "input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens",
              "cache_write_long_tokens", "audio_input_tokens", "audio_output_tokens", "reasoning_tokens")
    assert all(row["properties"][name]["type"] == "integer" for name in fields)
    assert set(fields) <= set(row["required"])
    assert "every priced token class" in row["properties"]["amount"]["description"].lower()
