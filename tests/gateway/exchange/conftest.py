"""A small network for the exchange tests: a sender, a recipient and a bystander."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from harness import Hospital, LiveServer


@dataclass
class Network:
    sender: Hospital
    recipient: Hospital
    bystander: Hospital


@pytest.fixture(scope="module")
def network(server: LiveServer) -> Network:
    network = Network(
        server.hospital("90000301", "Verzendend Ziekenhuis"),
        server.hospital("90000302", "Ontvangend Ziekenhuis"),
        server.hospital("90000303", "Ander Ziekenhuis"),
    )
    # Exchange needs a processor agreement (GDPR art. 28); the bystander has one only with the
    # recipient, never with the sender.
    server.agreement(network.sender.ura, network.recipient.ura)
    server.agreement(network.bystander.ura, network.recipient.ura)
    return network
