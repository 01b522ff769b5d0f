"""Vibration windows to features to text: kinematics, simulate, features, textify, datasets."""
