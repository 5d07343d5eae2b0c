"""The home page, before any station is configured."""

from django.test import Client


def test_it_says_no_stations_are_configured(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"KEBA stations" in response.content
    assert b"No stations are configured yet" in response.content
