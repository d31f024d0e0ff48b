"""Render kubespray's download definitions as Ansible would and yield the plan."""
