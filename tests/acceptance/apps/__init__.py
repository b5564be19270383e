"""Task modules that acceptance tests run with real `pgqueue worker -A ...` processes."""
