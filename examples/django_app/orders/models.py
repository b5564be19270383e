from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=20, default="new")  # new, fulfilled, expired
    receipt_sent = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    job_id = models.CharField(max_length=36, blank=True)

    def __str__(self) -> str:
        return f"Order {self.pk}: {self.quantity} x {self.item} ({self.status})"
