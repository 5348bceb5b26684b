//! Volumes: named volumes under the data root, bind mounts and tmpfs mounts (arrives with the volumes issue).
