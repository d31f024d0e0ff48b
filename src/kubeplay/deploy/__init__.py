"""Inventory and offline vars for kubespray, node prep, kubespray through ansible-runner, day-2."""
